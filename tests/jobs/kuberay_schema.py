"""Structural JSON Schemas of KubeRay's RayCluster and RayJob (``ray.io/v1``), written for the tests
from the CRDs ``ray.io_rayclusters.yaml`` and ``ray.io_rayjobs.yaml`` (ray-operator/config/crd/bases,
helm-chart/kuberay-operator/crds) and the Go types controller-gen makes them from:
``ray-operator/apis/ray/v1/raycluster_types.go`` at ray-project/kuberay commit 3275ee09f6a6 and
``rayjob_types.go`` at commit 0057210ed5a9 (the ``ray.io/v1`` API with RayCluster's ``managedBy`` and
``gcsFaultToleranceOptions`` and RayJob's ``deletionStrategy.onSuccess/onFailure``, ``submitterConfig``
and ``schedule``; the CRD files themselves are 0.7 MB each, mostly Kubernetes' PodTemplateSpec).

What controller-gen writes is followed: a field without ``omitempty`` or ``+optional`` is required,
``int32`` is an integer within int32, ``map[string]string`` an object of strings, enums and CEL
rules as enums. Every object KubeRay defines is closed (``additionalProperties: false``: a misspelt
field is an error here, where the API server would prune it silently); a pod template is left to
:func:`kubernetes_validate.validate` against Kubernetes' own schema, and a Service to Kubernetes too.
"""

from __future__ import annotations

INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT = {"type": "object"}  # a Kubernetes type, checked by kubernetes_validate where it matters


def closed(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


AUTOSCALER_OPTIONS = closed({
    "resources": OBJECT, "image": {"type": "string"}, "imagePullPolicy": {"type": "string"},
    "securityContext": OBJECT, "idleTimeoutSeconds": INT32,
    "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
    "env": {"type": "array", "items": OBJECT}, "envFrom": {"type": "array", "items": OBJECT},
    "volumeMounts": {"type": "array", "items": OBJECT},
})
REDIS_CREDENTIAL = closed({"valueFrom": OBJECT, "value": {"type": "string"}})
GCS_FAULT_TOLERANCE = closed({"redisUsername": REDIS_CREDENTIAL, "redisPassword": REDIS_CREDENTIAL,
                              "externalStorageNamespace": {"type": "string"}, "redisAddress": {"type": "string"}},
                             required=("redisAddress",))
HEAD_GROUP = closed({
    "template": OBJECT, "headService": OBJECT, "enableIngress": {"type": "boolean"},
    "rayStartParams": STRING_MAP, "serviceType": {"type": "string"},
}, required=("template", "rayStartParams"))
WORKER_GROUP = closed({
    "suspend": {"type": "boolean"}, "groupName": {"type": "string"}, "replicas": INT32, "minReplicas": INT32,
    "maxReplicas": INT32, "idleTimeoutSeconds": INT32, "rayStartParams": STRING_MAP, "template": OBJECT,
    "scaleStrategy": closed({"workersToDelete": {"type": "array", "items": {"type": "string"}}}),
    "numOfHosts": INT32,
}, required=("groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"))
MANAGED_BY = {"enum": ["ray.io/kuberay-operator", "kueue.x-k8s.io/multikueue"]}
RAY_CLUSTER_SPEC = closed({
    "suspend": {"type": "boolean"}, "managedBy": MANAGED_BY, "autoscalerOptions": AUTOSCALER_OPTIONS,
    "headServiceAnnotations": STRING_MAP, "enableInTreeAutoscaling": {"type": "boolean"},
    "gcsFaultToleranceOptions": GCS_FAULT_TOLERANCE, "headGroupSpec": HEAD_GROUP, "rayVersion": {"type": "string"},
    "workerGroupSpecs": {"type": "array", "items": WORKER_GROUP},
}, required=("headGroupSpec",))

DELETION_POLICY = closed({"policy": {"enum": ["DeleteCluster", "DeleteWorkers", "DeleteSelf", "DeleteNone"]}},
                         required=("policy",))
RAY_JOB_SPEC = closed({
    "activeDeadlineSeconds": {**INT32, "minimum": 1}, "backoffLimit": INT32, "rayClusterSpec": RAY_CLUSTER_SPEC,
    "submitterPodTemplate": OBJECT, "metadata": STRING_MAP, "clusterSelector": STRING_MAP,
    "submitterConfig": closed({"backoffLimit": INT32}), "managedBy": MANAGED_BY,
    "deletionStrategy": closed({"onSuccess": DELETION_POLICY, "onFailure": DELETION_POLICY},
                               required=("onSuccess", "onFailure")),
    "entrypoint": {"type": "string"}, "runtimeEnvYAML": {"type": "string"}, "jobId": {"type": "string"},
    "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode"]},
    "entrypointResources": {"type": "string"}, "entrypointNumCpus": {"type": "number"},
    "entrypointNumGpus": {"type": "number"}, "ttlSecondsAfterFinished": INT32,
    "shutdownAfterJobFinishes": {"type": "boolean"}, "suspend": {"type": "boolean"}, "schedule": {"type": "string"},
})


def resource(kind: str, spec: dict) -> dict:
    metadata = {"type": "object", "properties": {"name": {"type": "string"}, "labels": STRING_MAP}}
    return closed({"apiVersion": {"const": "ray.io/v1"}, "kind": {"const": kind}, "metadata": metadata,
                   "spec": spec}, required=("apiVersion", "kind", "metadata", "spec"))


SCHEMAS = {"RayCluster": resource("RayCluster", RAY_CLUSTER_SPEC), "RayJob": resource("RayJob", RAY_JOB_SPEC)}


def pod_templates(manifest: dict) -> dict[str, dict]:
    """Every pod template inside a RayCluster or RayJob, by where it is."""
    if manifest["kind"] == "RayJob":
        spec, prefix = manifest["spec"].get("rayClusterSpec", {}), "spec.rayClusterSpec"
        templates = {"spec.submitterPodTemplate": manifest["spec"]["submitterPodTemplate"]} \
            if "submitterPodTemplate" in manifest["spec"] else {}
    else:
        spec, prefix, templates = manifest["spec"], "spec", {}
    templates[f"{prefix}.headGroupSpec.template"] = spec["headGroupSpec"]["template"]
    for index, group in enumerate(spec.get("workerGroupSpecs", [])):
        templates[f"{prefix}.workerGroupSpecs[{index}].template"] = group["template"]
    return templates
