#!/usr/bin/env python
"""Open what ``voxcodec serve`` serves in a real neuroglancer, with the viewer state of the link it
prints, and save what neuroglancer draws once every visible chunk has loaded.

    python bench/neuroglancer_screenshot.py em.ome.zarr --out docs/images [--browser-binary /usr/bin/chromium]

Run it with the Python of an environment with ``neuroglancer`` (its Python package serves the
neuroglancer client locally), ``selenium`` and voxcodec (``pip install neuroglancer selenium
".[zarr]"``), on a machine with Chromium and its driver (Debian: ``chromium chromium-driver``).
For each source:

1. ``voxcodec serve``'s server starts on a free port (as the command does);
2. neuroglancer's Python viewer takes the state of the printed link, ``server.neuroglancer_state()``
   (the link opens the public client at neuroglancer-demo.appspot.com with that same state; this
   machine has no internet, so the client comes from the neuroglancer package);
3. headless Chromium renders it (software WebGL: SwiftShader), and ``viewer.screenshot`` waits until
   the chunks in view are loaded; the PNG is saved as ``OUT/neuroglancer_<name>.png``;
4. the server's chunk requests are counted, and the state neuroglancer reports back is checked: x,
   y, z display dimensions with the source's voxel size, and the xy layout.

Prints one line per source; exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+", help=".vxc streams or voxcodec zarr / OME-Zarr folders")
    ap.add_argument("--out", default="docs/images", help="folder for the screenshots")
    ap.add_argument("--browser-binary", default=None, help="the Chromium binary (default: selenium's choice)")
    ap.add_argument("--size", default="1000,800", help="screenshot width,height in pixels")
    a = ap.parse_args(argv)
    import neuroglancer
    import neuroglancer.webdriver

    from voxcodec.storage.serve import make_server

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in a.size.split(","))
    neuroglancer.set_server_bind_address("127.0.0.1")
    failed = 0
    for src in a.sources:
        server = make_server(src, port=0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            state = server.neuroglancer_state()
            viewer = neuroglancer.Viewer()
            viewer.set_state(neuroglancer.ViewerState(state))
            driver = neuroglancer.webdriver.Webdriver(
                viewer, headless=True, browser="chrome", browser_binary_path=a.browser_binary,
                extra_command_line_args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-sandbox",
                                         "--disable-dev-shm-usage"], print_logs=False)
            try:
                shot = viewer.screenshot(size=[width, height])  # waits for the visible chunks
                name = Path(src.rstrip("/")).name.replace(".", "_")
                png = out / f"neuroglancer_{name}.png"
                png.write_bytes(shot.screenshot.image)
                got = shot.viewer_state.to_json()
            finally:
                driver.__exit__(None, None, None)
            dims = got.get("dimensions", {})
            want = state["dimensions"]
            ok = (list(dims)[:3] == ["x", "y", "z"] and all(
                abs(dims[k][0] - want[k][0]) <= 1e-6 * want[k][0] and dims[k][1] == want[k][1] for k in "xyz")
                and got.get("layout") == "xy")
            print(f"{src}: dimensions {dims}, layout {got.get('layout')}, {server.cache.decodes} chunks decoded "
                  f"for the view, checks {'passed' if ok else 'FAILED'} -> {png}", flush=True)
            failed += not ok
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
