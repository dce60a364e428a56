"""The opening chapter (book/system.md): the figure of the whole system, drawn from the manifests."""
