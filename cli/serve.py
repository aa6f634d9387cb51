"""``voxcodec serve DEST``: serve a voxcodec-coded zarr array or group, or a ``.vxc`` stream, over HTTP as
plain uncompressed zarr v2 (for neuroglancer, webKnossos, zarr-js, or zarr-python without voxcodec)."""

from __future__ import annotations

import errno
import socket

import click

from voxcodec_cli.main import command


@command(epilog="\b\nexamples:\n"
                "  voxcodec serve em.zarr                      # http://127.0.0.1:8000/\n"
                "  voxcodec serve volume.vxc --port 9000       # one array; chunks = the stream's blocks\n"
                "  voxcodec serve em.ome.zarr --host 0.0.0.0   # reachable from other machines\n"
                "\nThen: zarr.open_array('http://127.0.0.1:8000/') (or zarr.open_group for a group), "
                "neuroglancer source zarr2://http://127.0.0.1:8000/ , or the neuroglancer link printed at startup "
                "(xy sections with their voxel size), or napari with voxcodec installed: napari "
                "http://127.0.0.1:8000/ . Every response allows any origin (CORS). "
                "Ctrl-C or SIGTERM stops the server (exit status 0). See docs/serve.md.")
@click.argument("input", metavar="DEST", type=click.Path())
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="TCP port (0: any free port, printed at startup)")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on (0.0.0.0: every interface; the data is then open to the network)")
@click.option("--cache-mb", type=click.FloatRange(min=0), default=256, show_default=True, metavar="MB",
              help="memory for decoded chunks (least recently used are dropped; 0: no cache)")
@click.option("-v", "--verbose", is_flag=True, help="log every request to stderr")
def serve(input, port, host, cache_mb, verbose):
    """Serve DEST over HTTP as uncompressed zarr v2: a voxcodec-coded zarr v3 array or group (an OME-Zarr
    multiscale image: its OME-NGFF 0.5 metadata is served as OME-NGFF 0.4), or a .vxc stream (one array whose
    chunks are the stream's blocks). Chunks are decoded on request and cached."""
    from voxcodec.storage.serve import make_server

    try:
        server = make_server(input, host, port, cache_mb, verbose)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise click.BadParameter(f"port {port} on {host} is in use: choose another (--port 0 picks a free one)",
                                     param_hint="'--port'") from None
        if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
            raise click.BadParameter(f"cannot listen on {host}: {exc.strerror or exc}", param_hint="'--host'") from None
        raise
    for w in server.warnings:
        click.echo(f"voxcodec: warning: {w}", err=True)
    cache = f"cache {cache_mb:g} MB" if cache_mb else "no cache"
    click.echo(f"serving {input} as zarr v2 at {server.url} ({server.describe()}; {cache}); open with "
               f"{server.example()}, or neuroglancer zarr2://{server.url} ; Ctrl-C stops")
    click.echo(f"neuroglancer, xy sections with their voxel size: {server.neuroglancer_url()}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (the CLI turns it into KeyboardInterrupt): the normal end
        click.echo(f"stopped serving {input} ({server.cache.decodes} chunks decoded, {server.cache.hits} "
                   "answered from the cache)", err=True)
    finally:
        server.server_close()
    return 0

