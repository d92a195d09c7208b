"""update's merge of a resources patch into the saved resources: per-device blockIO entries are
upserted by major:minor (runc 1.4), other lists and fields replaced."""

from __future__ import annotations

from ocirt.container.update import merge


def test_device_entries_are_upserted() -> None:
    saved = {"blockIO": {"weight": 100,
                         "weightDevice": [{"major": 7, "minor": 0, "weight": 10,
                                           "leafWeight": 20}],
                         "throttleReadBpsDevice": [{"major": 7, "minor": 0, "rate": 1},
                                                   {"major": 7, "minor": 1, "rate": 2}]},
             "pids": {"limit": 5}}
    patch = {"blockIO": {"weightDevice": [{"major": 7, "minor": 0, "weight": 30},
                                          {"major": 8, "minor": 0, "weight": 40}],
                         "throttleReadBpsDevice": [{"major": 7, "minor": 1, "rate": 9}],
                         "throttleWriteIOPSDevice": [{"major": 7, "minor": 0, "rate": 3}]}}
    merged = merge(saved, patch)
    block = merged["blockIO"]
    assert block["weight"] == 100
    assert block["weightDevice"] == [{"major": 7, "minor": 0, "weight": 30, "leafWeight": 20},
                                     {"major": 8, "minor": 0, "weight": 40}]
    assert block["throttleReadBpsDevice"] == [{"major": 7, "minor": 0, "rate": 1},
                                              {"major": 7, "minor": 1, "rate": 9}]
    assert block["throttleWriteIOPSDevice"] == [{"major": 7, "minor": 0, "rate": 3}]
    assert merged["pids"] == {"limit": 5}
    assert saved["blockIO"]["weightDevice"][0]["weight"] == 10, "the saved copy is untouched"


def test_a_duplicated_device_updates_its_last_entry() -> None:
    saved = {"blockIO": {"throttleReadBpsDevice": [{"major": 7, "minor": 0, "rate": 1},
                                                   {"major": 7, "minor": 0, "rate": 2}]}}
    merged = merge(saved, {"blockIO": {"throttleReadBpsDevice": [
        {"major": 7, "minor": 0, "rate": 5}]}})
    assert merged["blockIO"]["throttleReadBpsDevice"] == [{"major": 7, "minor": 0, "rate": 1},
                                                          {"major": 7, "minor": 0, "rate": 5}]
