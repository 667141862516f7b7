"""Faces, offline: detection and landmarks (dlib), identity embeddings (dlib, optional ArcFace) and scores, masks."""
