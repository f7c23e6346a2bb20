"""The Train page queues a pair once per seed, as one comparison group, and says before launch how small a
difference the chosen test set can show."""

from __future__ import annotations

from core import verdict, views
from core.db import session_factory
from tests.test_pages import no_worker, open_page, store, texts  # noqa: F401 - no_worker: an autouse fixture (no trainer started)


def test_a_pair_with_seeds_is_one_group_and_the_noise_floor_is_shown_before_launch(settings, csv_folder, tiny_model):
    store(settings, csv_folder)
    at = open_page("train")
    at.radio(key="train_model_kind").set_value(at.radio(key="train_model_kind").options[2]).run()
    at.text_input(key="train_model_name").set_value(tiny_model).run()
    assert at.number_input(key="train_repeats").value == 1, "the quick demo: one seed"
    floor = verdict.noise_floor(24)
    assert f"With 24 test texts, differences under about {floor:.1f} points of accuracy" in texts(at.caption)
    at.radio(key="train_preset").set_value("seed article").run()
    assert at.number_input(key="train_repeats").value == 3, "the seed article's preset: three seeds"
    at.number_input(key="train_epochs").set_value(1.0).run()
    at.number_input(key="train_repeats").set_value(2).run()
    assert "2 seeds" in at.button(key="train_pair").label
    at.button(key="train_pair").click().run()
    assert not at.exception
    with session_factory(settings.db_url)() as s:
        queued = sorted(views.all_runs(s), key=lambda r: r.id)
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
