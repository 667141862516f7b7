"""Reading and writing files: photos (EXIF, HEIC, alpha as a loss weight)."""
