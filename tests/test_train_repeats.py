"""The Train page queues a pair once per seed, as one comparison group, and says before launch how small a
difference the chosen test set can show."""

from __future__ import annotations

from core.results import tables, verdict
from core.store.db import session_factory
from tests.test_pages import no_worker, open_page, store, texts  # noqa: F401 - no_worker: an autouse fixture (no worker started)


def test_a_pair_with_seeds_is_one_group_and_the_noise_floor_is_shown_before_launch(settings, csv_folder, tiny_model):
    store(settings, csv_folder)
    at = open_page("train")
    at.radio(key="train_model_kind").set_value(at.radio(key="train_model_kind").options[2]).run()
    at.text_input(key="train_model_name").set_value(tiny_model).run()
    assert at.number_input(key="train_repeats").value == 1, "the quick demo: one seed"
    floor = verdict.noise_floor(24)
    assert f"With 24 test texts, differences under about {floor:.1f} points of accuracy" in texts(at.caption)
    at.radio(key="train_preset").set_value("as in the published experiment").run()
    assert at.number_input(key="train_repeats").value == 3, "the seed article's preset: three seeds"
    at.number_input(key="train_epochs").set_value(1.0).run()
    at.number_input(key="train_repeats").set_value(2).run()
    assert "2 seeds" in at.button(key="train_pair").label
    at.button(key="train_pair").click().run()
    assert not at.exception
    with session_factory(settings.db_url)() as s:
        queued = sorted(tables.all_runs(s), key=lambda r: r.id)
        assert [(r.method, r.config["seed"]) for r in queued] == [
            ("full", 42),
            ("lora", 42),
            ("full", 43),
            ("lora", 43),
        ]
        assert len({r.group_id for r in queued}) == 1 and queued[0].group.repeats == 2
        assert len({r.pair_id for r in queued}) == 2

    at = open_page("runs", run=str(queued[2].id))
    [link] = [link for link in at.get("page_link") if "Comparison #" in link.proto.label]
    assert "one of 2 seeds" in link.proto.label and link.proto.disabled, "no verdict before a pair has completed"
    at = open_page("runs")
    table = next(d.value for d in at.dataframe if "comparison" in d.value.columns)
    assert len(table) == 1 and table["runs completed"][0] == "0 of 4" and (table["verdict"] == "").all()


def test_a_preset_keeps_the_seeds_the_user_set_and_names_what_it_is(settings, csv_folder, tiny_model):
    store(settings, csv_folder)
    at = open_page("train")
    presets = at.radio(key="train_preset")
    assert "as in the published experiment" in presets.options
    assert not any("seed" in option for option in presets.options), "'seed' is the random seed's word on this page"
    quick = presets.proto.captions[presets.options.index("quick demo")]
    assert "2 points of what those settings scored there" in quick and "On the demo set" in quick, (
        "the quick demo's promise says what it is measured against"
    )
    at.number_input(key="train_repeats").set_value(2).run()
    at.radio(key="train_preset").set_value("as in the published experiment").run()
    assert at.number_input(key="train_repeats").value == 2, "the seeds the user set stay"
    at.radio(key="train_preset").set_value("quick demo").run()
    assert at.number_input(key="train_repeats").value == 2
    at.radio(key="train_preset").set_value("as in the published experiment").run()
    at.button(key="train_use_preset_repeats").click().run()
    assert at.number_input(key="train_repeats").value == 3, "the preset's own seeds, when asked for"
    assert "train_use_preset_repeats" not in {b.key for b in at.button}, "offered only while they differ"
    at.radio(key="train_preset").set_value("quick demo").run()
    assert at.number_input(key="train_repeats").value == 1, "seeds left as the preset set them follow the preset"
    assert not at.exception
