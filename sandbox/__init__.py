"""Everything that exists only to run the product without Azure: the local Azure simulator and the local
Functions host. Product code (function_app.py, orchestrators/, activities/, cmk/) never imports this package."""
