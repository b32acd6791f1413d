"""Proxy-task data: images (scikit-learn's digits or an .npz) and corpora (PTB layout or generated)."""
