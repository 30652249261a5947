"""knet's control plane: models, store, API server, controllers and scheduler.

It knows nothing about Linux networking and never imports `knet`.
"""
