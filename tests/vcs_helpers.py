"""Specs shared by the version-control tests (test_cellhash.py, test_semdiff.py,
test_vcs_cli.py, test_viz.py): ShrinkCNN-A and -B, and ShrinkCNN-A written differently."""

from __future__ import annotations

A = "specs/shrinkcnn_a.shrink"
B = "specs/shrinkcnn_b.shrink"

# ShrinkCNN-A with its nodes renamed, its statements reordered and its text reformatted.
RENAMED = """shrink 1
# the same network, written differently
cell ShrinkA(w: int, act = relu) {
    input inp
    right = conv(w, k=1) <- inp, b
    b = sepconv(w, k=3) act <- inp
    left = sepconv(w,
                   k=3) <- n1x, inp
    n1x = sepconv(out=w, k=3, stride=1) act <- inp  # defaults spelled out
    output concat(right, left) + inp
}

network ShrinkCNN_A(classes = 1001, act = relu) {
    input image[3, 224, 224]
    stem conv(44, k=3, stride=2) act
    stage ShrinkA(12, act) x 1
    stage ShrinkA(24, act) x 3 downsample maxpool(2)
    stage ShrinkA(44, act) x 4 downsample maxpool(2)
    stage ShrinkA(88, act) x 6 downsample maxpool(2)
    stage ShrinkA(180, act) x 4 downsample maxpool(2)
    head conv(1280, k=1) act -> global_avgpool -> linear(classes)
}
"""
