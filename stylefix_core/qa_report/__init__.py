"""The QA report: a self-contained ``report.html`` beside a run's outputs.

Layers, so each can be tested alone: :mod:`.loader` is the only module that
touches storage; :mod:`.summary`, :mod:`.compare` and :mod:`.stats` compute
from Arrow tables; :mod:`.svg` and :mod:`.render` turn numbers into markup;
:mod:`.thumbnails` turns image bytes into inline images; :mod:`.build` wires
them together for the job and for ``stylefix report``.
"""
