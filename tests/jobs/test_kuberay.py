"""The KubeRay manifests (issue 9 §4): RayJob and RayCluster fields against a structural schema written
from KubeRay's CRDs (kuberay_schema), every pod template inside against Kubernetes' own schema
(kubernetes_validate, Kubernetes 1.37.0, strict), the RayJob's entrypoint through curate's own
parser and spec check, and a wrong field in either caught."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kuberay_schema import SCHEMAS, pod_templates

from curate.cli import _parser
from curate.config import parse_spec

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = {"RayJob": REPO / "jobs" / "kuberay" / "rayjob.yaml", "RayCluster": REPO / "jobs" / "kuberay" / "raycluster.yaml"}
KUBERNETES = "1.37.0"


def load(kind: str) -> dict:
    return yaml.safe_load(MANIFESTS[kind].read_text())


def kuberay_errors(manifest: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMAS[manifest["kind"]])
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest))


def kubernetes_errors(template: dict) -> list[str]:
    """A pod template as Kubernetes' API server sees it: the ``template`` of a v1 PodTemplate."""
    wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "curate"}, "template": template}
    try:
        kubernetes_validate.validate(wrapped, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{'.'.join(map(str, err.path))}: {err.message}"]
    return []


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_manifest_fields_follow_the_kuberay_crd(kind: str) -> None:
    assert kuberay_errors(load(kind)) == []


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_every_pod_template_is_a_valid_kubernetes_pod_template(kind: str) -> None:
    templates = pod_templates(load(kind))
    assert len(templates) == 3  # head, cpu workers, gpu workers
    assert {where: kubernetes_errors(t) for where, t in templates.items()} == {where: [] for where in templates}


def test_the_raycluster_is_the_rayjobs_cluster() -> None:
    assert load("RayCluster")["spec"] == load("RayJob")["spec"]["rayClusterSpec"]


def test_groups_gpus_and_credentials() -> None:
    spec = load("RayCluster")["spec"]
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert sorted(groups) == ["cpu", "gpu"]
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    containers = [c for t in pod_templates(load("RayCluster")).values() for c in t["spec"]["containers"]]
    assert all(c["envFrom"] == [{"secretRef": {"name": "curate-s3"}}] for c in containers)
    assert len({c["image"] for c in containers}) == 1


def test_the_rayjob_entrypoint_is_a_curate_run_that_passes_spec_check(monkeypatch) -> None:
    """The entrypoint through curate's own argument parser, its recipe (from this repository, as in the image)
    with its overrides through the spec's validation; the run directory and the input are on object storage.
    (Building the stages would also check the model cache, which is the image's volume, not this machine's.)"""
    argv = shlex.split(load("RayJob")["spec"]["entrypoint"])
    assert argv[:2] == ["curate", "run"]
    args = _parser().parse_args(argv[1:])
    monkeypatch.chdir(REPO)
    spec = parse_spec(args.pipeline, args.overrides)
    assert args.output.startswith("s3://")
    assert spec.input.path.startswith("s3://") and spec.input.serve is None
    assert [s.stage for s in spec.stages][:2] == ["laion_caption", "url_dedup"]


WRONG = {
    "workerGroupSpecs misspelt": ("RayCluster", lambda m: m["spec"].__setitem__(
        "workerGroupSpec", m["spec"].pop("workerGroupSpecs")),
        ["spec: Additional properties are not allowed ('workerGroupSpec' was unexpected)"]),
    "replicas as a string": ("RayCluster", lambda m: m["spec"]["workerGroupSpecs"][0].__setitem__("replicas", "4"),
                             ["spec.workerGroupSpecs.0.replicas: '4' is not of type 'integer'"]),
    "no groupName": ("RayJob", lambda m: m["spec"]["rayClusterSpec"]["workerGroupSpecs"][1].pop("groupName"),
                     ["spec.rayClusterSpec.workerGroupSpecs.1: 'groupName' is a required property"]),
    "submissionMode unknown": ("RayJob", lambda m: m["spec"].__setitem__("submissionMode", "K8sJob"),
                               ["spec.submissionMode: 'K8sJob' is not one of ['K8sJobMode', 'HTTPMode', "
                                "'InteractiveMode']"]),
}


@pytest.mark.parametrize("case", sorted(WRONG))
def test_a_wrong_kuberay_field_is_caught(case: str) -> None:
    kind, change, expected = WRONG[case]
    manifest = copy.deepcopy(load(kind))
    change(manifest)
    assert kuberay_errors(manifest) == expected


POD_WRONG = {
    "resources misspelt": (lambda c, s: c.__setitem__("resource", c.pop("resources")),
                           "template.spec.containers.0: Additional properties are not allowed ('resource' was unexpected)"),
    "toleration effect a number": (lambda c, s: s["tolerations"][0].__setitem__("effect", 7),
                                   "template.spec.tolerations.0.effect: 7 is not of type 'string', 'null'"),
    "gpu limit not a quantity": (lambda c, s: c["resources"]["limits"].__setitem__("nvidia.com/gpu", [1]),
                                 "template.spec.containers.0.resources.limits.nvidia.com/gpu: [1] is not valid under "
                                 "any of the given schemas"),
}


@pytest.mark.parametrize("case", sorted(POD_WRONG))
def test_a_wrong_pod_template_field_is_caught(case: str) -> None:
    change, expected = POD_WRONG[case]
    template = copy.deepcopy(pod_templates(load("RayCluster"))["spec.workerGroupSpecs[1].template"])
    change(template["spec"]["containers"][0], template["spec"])
    assert kubernetes_errors(template) == [expected]
