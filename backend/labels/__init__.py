"""Certification-trademark labels (证明商标标签): codes, templates, PDF and ZPL rendering.

The pure part (no database, no Flask): `codes` (label codes and QR URLs), `templates`
(declarative TOML layouts in `label_templates/`), `render` (PDF), `zpl` (Zebra thermal
printers), `samples` (made-up labels for previews and benchmarks).
"""
