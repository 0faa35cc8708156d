"""gfm: a graph foundation model for personalization (2T-HGNN) on Kubeflow."""

__version__ = "0.1.0"
