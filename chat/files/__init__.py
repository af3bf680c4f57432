"""Uploaded files (PROTOCOL.md 8): their type, image thumbnail, storage name and serving headers.

- content.py     sniff_content_type() from the bytes, RASTER_TYPES, clean_name(), content_disposition()
- images.py      image_info_and_thumbnail(): Pillow, bomb-safe, metadata-free WebP thumbnail
- inspection.py  inspect_upload(): the two above as one decision for a stored file
- storage.py     storage_name() (random, never from the upload's name), copy_capped()

No model, view or setting is read here: the upload view and the services call these.
"""
