"""The codec core: volume -> blocks -> a model that learns while it codes (format 6) -> rANS coder ->
the ``.vxc`` container.

- :mod:`.encoder` / :mod:`.decoder`: the streaming :class:`Encoder` and random-access :class:`Decoder`;
- :mod:`.learn`: one format 6 block (its parameters, encode and decode) over the native engine
  (``native/vx6.c``: online least-squares prediction, contexts, adaptive residual models, rANS);
- :mod:`.presets`: the named parameter sets; :mod:`.palette`: slice kinds and palettes;
- :mod:`.container`: the byte layout; :mod:`.parallel`, :mod:`.resume`: workers and resumed encodes;
- :mod:`.legacy`: readers of formats 1-5 (decode only); :mod:`.preview`: coarse previews.
"""
