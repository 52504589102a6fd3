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
