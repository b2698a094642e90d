"""Pure logic of SAO data synthesis: templates, parsers, judge aggregation and pair selection.

Everything here takes data and returns data; the stages in `sao.stages` call it around
the engine.
"""
