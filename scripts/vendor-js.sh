#!/usr/bin/env bash
# Re-fetch the JavaScript the built book serves itself (no CDN at reading time).
# Pinned versions; run only to update them. ipywidgets 8 pairs with html-manager 1.x.
set -euo pipefail
cd "$(dirname "$0")/.."
HTML_MANAGER=1.0.15 MATHJAX=3.2.2 REQUIREJS=2.3.8
tmp=$(mktemp -d)
(cd "$tmp" && npm pack "@jupyter-widgets/html-manager@$HTML_MANAGER" "mathjax@$MATHJAX" "requirejs@$REQUIREJS" >/dev/null)
for f in "$tmp"/*.tgz; do mkdir -p "${f%.tgz}"; tar xzf "$f" -C "${f%.tgz}"; done
out=book/_vendor
rm -rf "$out/mathjax" "$out/require.js"
hm="$out/@jupyter-widgets/html-manager/dist"
rm -rf "$out/@jupyter-widgets"
mkdir -p "$hm" "$out/mathjax/output/chtml/fonts"
cp "$tmp"/requirejs-*/package/require.js "$out/require.js"
cp "$tmp"/jupyter-widgets-html-manager-*/package/dist/embed-amd.js "$tmp"/jupyter-widgets-html-manager-*/package/dist/*.woff* "$tmp"/jupyter-widgets-html-manager-*/package/dist/*.ttf "$hm/"
# Its second bundle asks for the same fonts one folder up.
(cd "$out/@jupyter-widgets" && for f in html-manager/dist/*.woff* html-manager/dist/*.ttf; do ln -s "$f" "$(basename "$f")"; done)
cp "$tmp"/jupyter-widgets-html-manager-*/package/dist/embed.js.LICENSE.txt "$hm/LICENSE.txt"
cp "$tmp"/mathjax-*/package/es5/tex-chtml.js "$out/mathjax/"
cp -r "$tmp"/mathjax-*/package/es5/output/chtml/fonts/woff-v2 "$out/mathjax/output/chtml/fonts/"
cp "$tmp"/mathjax-*/package/LICENSE "$out/mathjax/LICENSE"
rm -rf "$tmp"
echo "vendored html-manager $HTML_MANAGER, mathjax $MATHJAX, requirejs $REQUIREJS into $out"
