// Resolve AMD module ids (and so the widget bundles' icon fonts) inside _static/,
// wherever the page lives. Loaded after require.js and before the widget bundle.
(function () {
  var here = document.currentScript.src;  // …/_static/require-config.js
  require.config({ baseUrl: here.slice(0, here.lastIndexOf("/") + 1) });
})();
