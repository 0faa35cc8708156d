"""Tests of gfm.pipelines.remote with kfp.Client against a KFP API double."""

import pytest

from gfm.cli import main
from gfm.components import decode_parameter
from gfm.pipelines.compile import pipeline_arguments
from gfm.pipelines.remote import (
    check_cron,
    kfp_client,
    schedule_run,
    submit_run,
)
from gfm.pipelines.run_config import load_run_config


def _arguments():
    return pipeline_arguments(load_run_config("movielens-1m"))


@pytest.mark.parametrize(
    "expression", ["0 0 3 * * *", "0 30 */6 * * 1-5", "@every 24h", " 0 0 4 * * 0 "]
)
def test_check_cron_accepts_six_fields_and_descriptors(expression):
    assert check_cron(expression) == expression.strip()


def test_check_cron_rejects_five_fields_with_fix():
    with pytest.raises(ValueError, match=r"becomes '0 0 3 \* \* \*'"):
        check_cron("0 3 * * *")


@pytest.mark.parametrize("expression", ["", "daily", "0 0 3 * * * *", "0 0 3 * * $"])
def test_check_cron_rejects_other_shapes(expression):
    with pytest.raises(ValueError, match="six fields, seconds first"):
        check_cron(expression)


def test_submit_run_sends_spec_arguments_and_account(kfp_api, cluster_package):
    client = kfp_client(kfp_api.url)

    run_id = submit_run(
        client, cluster_package, arguments=_arguments(), run_name="ml-1m-test",
        pipeline_root="gs://bucket/root", service_account="gfm-pipeline",
    )

    (experiment,) = kfp_api.bodies("POST", "/apis/v2beta1/experiments")
    (run,) = kfp_api.bodies("POST", "/apis/v2beta1/runs")
    assert run_id in kfp_api.runs
    assert experiment["display_name"] == "gfm"
    assert run["display_name"] == "ml-1m-test"
    assert run["service_account"] == "gfm-pipeline"
    assert run["experiment_id"] == kfp_api.runs[run_id]["experiment_id"]
    # kfp.Client sends the platform spec (placement) beside the pipeline spec.
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "gfm-2t-hgnn"
    assert "kubernetes" in run["pipeline_spec"]["platform_spec"]["platforms"]
    assert run["runtime_config"]["pipeline_root"] == "gs://bucket/root"
    parameters = run["runtime_config"]["parameters"]
    assert parameters["dataset_name"] == "movielens-1m"
    assert parameters["products"] == [{"product": "movies", "item_types": ["movie"]}]


def test_submit_run_reuses_existing_experiment(kfp_api, cluster_package):
    client = kfp_client(kfp_api.url)

    for name in ("first", "second"):
        submit_run(client, cluster_package, arguments=_arguments(), run_name=name)

    assert len(kfp_api.bodies("POST", "/apis/v2beta1/experiments")) == 1
    assert len(kfp_api.runs) == 2
    assert len({run["experiment_id"] for run in kfp_api.runs.values()}) == 1


def test_schedule_run_creates_recurring_run(kfp_api, cluster_package):
    client = kfp_client(kfp_api.url)

    recurring_id = schedule_run(
        client, cluster_package, name="gfm-daily", cron="0 0 3 * * *",
        arguments=_arguments(), pipeline_root="gs://bucket/root",
    )

    (body,) = kfp_api.bodies("POST", "/apis/v2beta1/recurringruns")
    assert recurring_id in kfp_api.recurring_runs
    assert body["display_name"] == "gfm-daily"
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert int(body["max_concurrency"]) == 1
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["service_account"] == "gfm-pipeline"
    assert body["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "gfm-2t-hgnn"
    assert body["runtime_config"]["parameters"]["dataset_name"] == "movielens-1m"


def test_schedule_run_same_name_needs_replace(kfp_api, cluster_package):
    client = kfp_client(kfp_api.url)
    first = schedule_run(client, cluster_package, name="gfm-weekly",
                         cron="0 0 4 * * 0", arguments=_arguments())

    with pytest.raises(ValueError, match="already exists"):
        schedule_run(client, cluster_package, name="gfm-weekly",
                     cron="0 0 4 * * 0", arguments=_arguments())
    second = schedule_run(client, cluster_package, name="gfm-weekly",
                          cron="0 0 5 * * 0", arguments=_arguments(), replace=True)

    assert list(kfp_api.recurring_runs) == [second]
    assert second != first
    deletes = [p for m, p, _ in kfp_api.requests if m == "DELETE"]
    assert deletes == [f"/apis/v2beta1/recurringruns/{first}"]


def test_schedule_run_rejects_bad_cron_before_calling_api(kfp_api, cluster_package):
    client = kfp_client(kfp_api.url)
    calls = len(kfp_api.requests)

    with pytest.raises(ValueError, match="six fields"):
        schedule_run(client, cluster_package, name="x", cron="0 3 * * *",
                     arguments=_arguments())

    assert len(kfp_api.requests) == calls


def test_cli_schedule_reuses_foundation(kfp_api, capsys):
    code = main([
        "schedule", "--host", kfp_api.url, "--name", "gfm-daily",
        "--cron", "0 0 3 * * *", "--reuse-foundation",
        "--foundation-uri", "gs://bucket/foundation", "--placement", "cpu-cluster",
        "--set", "hgnn.max_epochs=3",
    ])

    assert code == 0
    (body,) = kfp_api.bodies("POST", "/apis/v2beta1/recurringruns")
    parameters = body["runtime_config"]["parameters"]
    assert parameters["reuse_foundation"] is True
    assert parameters["foundation_llm_uri"] == "gs://bucket/foundation/llm"
    assert decode_parameter(parameters["hgnn_config"])["max_epochs"] == 3
    # kfp.Client prints links first; the command's own output is the last line.
    assert capsys.readouterr().out.splitlines()[-1] in kfp_api.recurring_runs


def test_cli_submit_writes_run_name(kfp_api, capsys):
    code = main([
        "submit", "--host", kfp_api.url, "--config", "lastfm-2k",
        "--run-name", "lastfm-now", "--experiment", "nightly", "--no-cache",
    ])

    assert code == 0
    (run,) = kfp_api.bodies("POST", "/apis/v2beta1/runs")
    assert run["display_name"] == "lastfm-now"
    assert kfp_api.bodies("POST", "/apis/v2beta1/experiments")[0]["display_name"] == "nightly"
    assert run["runtime_config"]["parameters"]["products"][1] == {
        "product": "tags", "item_types": ["tag"],
    }
    assert capsys.readouterr().out.splitlines()[-1] in kfp_api.runs


def test_cli_schedule_bad_cron_exits_2(kfp_api):
    code = main([
        "schedule", "--host", kfp_api.url, "--name", "x", "--cron", "0 3 * * *",
    ])

    assert code == 2
    assert kfp_api.bodies("POST", "/apis/v2beta1/recurringruns") == []

