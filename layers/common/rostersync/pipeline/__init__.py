"""The sync pipeline: fetch → normalize → match → stage → commit."""
