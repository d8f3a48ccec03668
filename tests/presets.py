"""Presets as the tests use them."""

from __future__ import annotations

import dataclasses

from pool_core.sites import SitePreset

# How long the tests give the demo's comments app to render before the PO fails as
# LAYOUT_UNKNOWN (the coupa preset's 15 s is for real tenants; the demo renders it in
# 0.2 s): the same rule, without 15 s waits for the PO whose comments never render.
TEST_RENDER_TIMEOUT_S = 4.0


def quick_render(preset: SitePreset) -> SitePreset:
    """`preset` with its attachment sources' render timeouts cut to the tests' own."""
    sources = tuple(dataclasses.replace(s, render_timeout_s=min(s.render_timeout_s,
                                                                TEST_RENDER_TIMEOUT_S))
                    for s in preset.attachment_sources)
    return dataclasses.replace(preset, attachment_sources=sources)
