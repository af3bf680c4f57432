"""Uploaded files (PROTOCOL.md 8): their type, image thumbnail, storage name and serving headers.

- content.py        sniff_content_type() from the bytes, RASTER_TYPES, clean_name(), content_disposition()
- images.py         image_info_and_thumbnail(): Pillow, bomb-safe, metadata-free WebP thumbnail
- inspection.py     inspect_upload(): the two above as one decision for a stored file
- storage.py        storage_name() (random, never from the upload's name), copy_capped(), FileTooLarge
- uploadhandler.py  CappedUploadHandler: CHAT_MAX_UPLOAD while Django parses a multipart body
- responses.py      file_response(): the /files/ answer (inert headers, ETag, ranges, X-Accel-Redirect)

No model is used here: the upload view, the /files/ view and the services call these.
chat/limits.py caps the request body before Django reads it.
"""
