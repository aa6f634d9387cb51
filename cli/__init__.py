"""Command-line tools of voxcodec (installed as the ``voxcodec`` console script)."""
