"""Where the server keeps uploaded files (fs.py: a blob directory)."""
