#!/usr/bin/env python
"""Open voxcodec files in a real napari, as a user does, and save what napari shows.

    xvfb-run -a -s "-screen 0 1400x1000x24" python bench/napari_screenshot.py em.vxc em.ome.zarr --out docs

Run it with the Python of an environment that has napari (with a Qt binding, e.g.
``pip install "napari[pyqt5]"``) and voxcodec (``pip install ".[zarr]"``), under a display (Xvfb on a
server: Debian's ``xvfb`` package). For each path, in a fresh napari viewer:

1. ``viewer.open(path, plugin=None)``: napari picks voxcodec's reader itself, from the package's npe2
   manifest, as ``napari PATH`` and File > Open do.  For a ``*.zarr`` folder napari's builtin reader
   offers itself too, and napari asks which to use (a dialog in the GUI, ``MultipleReaderError``
   here): the script then names ``voxcodec``, as ``napari --plugin voxcodec PATH`` does;
2. checks that one image layer came back with the reader's voxel size and unit, and that the slice
   napari shows equals the voxels of the file (decoded by voxcodec outside napari);
3. saves a screenshot of the whole window, with napari's scale bar in the layer's unit, as
   ``OUT/napari_<name>.png``.

Prints one line per path and exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help=".vxc streams, voxcodec zarr / OME-Zarr folders, or URLs")
    ap.add_argument("--out", default="docs", help="folder for the screenshots")
    a = ap.parse_args(argv)
    import napari
    import numpy as np
    from napari.errors import MultipleReaderError

    import voxcodec

    # no pop-up notifications over the picture (e.g. about the Qt binding)
    from napari.settings import get_settings

    get_settings().application.gui_notification_level = "error"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in a.paths:
        viewer = napari.Viewer(show=True)
        try:  # no plugin named: napari chooses the reader, as `napari PATH` does
            layers, how = viewer.open(path, plugin=None), "chosen by napari"
        except MultipleReaderError:  # *.zarr: napari's builtin reader claims it too, and napari asks which
            layers, how = viewer.open(path, plugin="voxcodec"), "napari asked which reader: voxcodec given"
        layer = layers[0]
        z = layer.data[0].shape[0] // 2 if layer.multiscale else layer.data.shape[0] // 2
        viewer.dims.set_current_step(0, z)  # the middle slice
        viewer.scale_bar.visible = True
        viewer.reset_view()
        full = layer.data[0] if layer.multiscale else layer.data
        shown = np.asarray(full[z])
        if path.endswith(".vxc"):
            want = voxcodec.decode(path)[z]
        else:
            import zarr

            g = zarr.open(path, mode="r")
            want = (g["0"] if isinstance(g, zarr.Group) else g)[z]
        ok = len(layers) == 1 and layer.ndim == 3 and np.array_equal(shown, want)
        name = Path(path.rstrip("/")).name.replace(".", "_")
        png = out / f"napari_{name}.png"
        napari.utils.io.imsave(str(png), viewer.screenshot(canvas_only=False, flash=False))
        print(f"{path} (reader {how}): {len(layers)} layer(s) {layer.name!r}, shape {full.shape}, multiscale {layer.multiscale}, "
              f"scale {tuple(float(s) for s in layer.scale)}, units {tuple(str(u) for u in layer.units)}, "
              f"slice z={z} equal to the file's: {np.array_equal(shown, want)} -> {png}", flush=True)
        failed += not ok
        viewer.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
