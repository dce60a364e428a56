"""ipywidgets panels, one module per chapter (layer 3: presentation)."""
