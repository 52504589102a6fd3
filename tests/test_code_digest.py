"""Each rule's code digest covers exactly the package code its stage runs."""

from __future__ import annotations

import pytest

from canids.workflow.code_digest import ENTRIES, module_closure, stage_code_digest


def test_each_stage_code_is_what_its_entry_modules_import():
    autoencoder, fusion = module_closure((ENTRIES["autoencoder"],)), module_closure((ENTRIES["fusion"],))
    assert {"canids.models.vgae", "canids.models.lean", "canids.graphs.graphset", "canids.util"} <= set(autoencoder)
    assert "canids.stages.fusion" not in autoencoder and "canids.stages.streaming" not in fusion
    assert {"canids.stages.autoencoder", "canids.stages.curriculum", "canids.stages.fusion"} <= set(fusion)
    assert len({stage_code_digest(rule) for rule in ENTRIES}) == len(ENTRIES)
    with pytest.raises(KeyError, match="no code entry for rule 'report'"):
        stage_code_digest("report")


def test_the_digest_is_the_same_from_the_parse_from_the_cache_and_from_a_damaged_cache(tmp_path, monkeypatch):
    """What a module contributes is cached by its bytes; a cache entry that is damaged or absent is re-parsed."""
    from canids.workflow import code_digest

    def fresh_digest() -> str:
        code_digest._summary.cache_clear()
        return stage_code_digest("fusion")

    monkeypatch.setenv("CANIDS_CODE_CACHE", "")
    uncached = fresh_digest()
    monkeypatch.setenv("CANIDS_CODE_CACHE", str(tmp_path))
    assert fresh_digest() == uncached
    entries = sorted(tmp_path.glob("*.json"))
    assert len(entries) == len(module_closure((ENTRIES["fusion"],)))
    assert fresh_digest() == uncached  # read back from the cache
    entries[0].write_text("{not json")
    entries[1].write_text('{"code": "0"}')
    assert fresh_digest() == uncached
    code_digest._summary.cache_clear()
