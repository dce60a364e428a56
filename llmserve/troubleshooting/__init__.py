"""The troubleshooting chapter (book/troubleshooting.md): the catalogue of failures and how to recognise them.

* ``catalogue`` (pure rules): one entry per section of the page, and :func:`~.catalogue.match`,
  which finds the entries in an event message, a log tail or an exception's text.
"""
