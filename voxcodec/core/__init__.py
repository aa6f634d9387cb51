"""The codec core: blocks of slices -> a model per block -> exact integer inference -> range coder ->
the ``.vxc`` container.

- :mod:`.encoder` / :mod:`.decoder`: the streaming :class:`Encoder` and random-access :class:`Decoder`;
- :mod:`.block`: one block (fit, predict, code); :mod:`.training`: float training (torch, encoder only);
- :mod:`.network`: int8 networks and their exact integer inference; :mod:`.context`: the multi-pass
  voxel order and its features; :mod:`.entropy`, :mod:`.palette`: tokens and tables for the coder;
- :mod:`.container`: the byte layout; :mod:`.presets`: network sizes and training effort.
"""
