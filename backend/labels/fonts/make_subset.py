"""Rebuild the label font shipped beside this file (developers only; needs fontTools).

    apt-get install fonts-wqy-microhei        # Debian's WenQuanYi Micro Hei 0.2.0-beta (.ttc)
    .venv/bin/python backend/labels/fonts/make_subset.py \
        /usr/share/fonts/truetype/wqy/wqy-microhei.ttc backend/labels/fonts/WenQuanYiMicroHei-GB2312.ttf

Keeps the "Micro Hei" face (font 0 of the collection; TrueType outlines, which reportlab can
embed), only the characters of GB 2312 (6,763 hanzi and its 682 symbols) plus ASCII, Latin-1 and
a few CJK punctuation marks, and drops hinting and OpenType layout tables (labels need neither):
5 MB → about 1.3 MB. A text with a character outside this set is refused by the renderer with
`labels.text_unprintable` naming the character; set LABEL_FONT to a fuller TrueType font to
print it.
"""
from __future__ import annotations

import sys

EXTRA = "·—–‘’“”…‰※℃№®©™〇　、。〈〉《》「」『』【】〔〕！（），．：；？［］｛｝～￥"


def charset() -> set[str]:
    chars = {chr(c) for c in range(0x20, 0x7F)} | {chr(c) for c in range(0xA0, 0x100)} | set(EXTRA)
    for hi in range(0xA1, 0xF8):
        for lo in range(0xA1, 0xFF):
            try:
                chars.add(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:
                pass
    return chars


def main(src: str, dst: str) -> None:
    from fontTools import subset
    from fontTools.ttLib import TTFont

    font = TTFont(src, fontNumber=0)
    cmap = font.getBestCmap()
    wanted = sorted(ord(c) for c in charset() if ord(c) in cmap)
    opts = subset.Options()
    opts.hinting = False
    opts.layout_features = []
    opts.name_IDs = ["*"]
    opts.name_languages = ["*"]
    opts.notdef_outline = True
    opts.glyph_names = False
    opts.drop_tables += ["DSIG", "GSUB", "GPOS", "GDEF", "FFTM"]
    sub = subset.Subsetter(opts)
    sub.populate(unicodes=wanted)
    sub.subset(font)
    font.recalcTimestamp = False  # reproducible bytes
    font["head"].created = font["head"].modified = 0
    font.save(dst, reorderTables=True)
    print(f"{dst}: {len(wanted)} characters")


if __name__ == "__main__":
    main(*sys.argv[1:3])
