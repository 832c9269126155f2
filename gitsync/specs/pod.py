"""Kubernetes pod settings as a spec writes them: the parts of core/v1 that a model's
pods need (placement, volumes, security, pull secrets, containers), shared by every
spec kind that runs pods.

Small types that people get wrong in small ways (tolerations, topology spread
constraints, volume mounts, ports) are typed field by field, so a typo is reported at
its line with a "did you mean". The big ones (affinity, volumes, security contexts,
probes) are mappings whose top-level keys :func:`kube_keys` checks against the
Kubernetes type's own, and whose contents go to the API server as written. Typing
all of core/v1 by hand would copy thousands of lines that Kubernetes already checks
(every rendered object passes a server-side dry-run against the real schema in the
tests); checking the top level catches the typos that matter (``nodeAfinity``)
without that copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

from gitsync.specs.common import DNS1123_LABEL, Resources, StrictModel, closest_name

__all__ = [
    "DNS1123_SUBDOMAIN",
    "Affinity",
    "Container",
    "ContainerSecurityContext",
    "Env",
    "EnvSource",
    "LabelSelector",
    "PodSecurityContext",
    "PodSettings",
    "Port",
    "Probe",
    "Toleration",
    "TopologySpreadConstraint",
    "Volume",
    "VolumeMount",
    "kube_keys",
]

DNS1123_SUBDOMAIN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

_Subdomain = Annotated[str, StringConstraints(pattern=DNS1123_SUBDOMAIN, max_length=253)]
_ContainerName = Annotated[str, StringConstraints(pattern=DNS1123_LABEL, max_length=63)]


def kube_keys(
    type_name: str,
    keys: Iterable[str],
    *,
    one_of: Iterable[str] = (),
    required: Iterable[str] = (),
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A check of a Kubernetes type passed through as a mapping: its top-level keys.

    ``one_of``: keys of which exactly one must be given (a volume's source).
    """
    known = frozenset(keys) | frozenset(one_of) | frozenset(required)
    sources = tuple(sorted(one_of))
    needed = tuple(required)

    def check(value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key not in known:
                hint = closest_name(key, known)
                raise ValueError(
                    f"unknown field {key!r} of a Kubernetes {type_name}"
                    + (f"; did you mean {hint!r}?" if hint else "")
                )
        for key in needed:
            if key not in value:
                raise ValueError(f"a Kubernetes {type_name} needs {key!r}")
        if sources and sum(key in value for key in sources) != 1:
            raise ValueError(f"a Kubernetes {type_name} needs exactly one of {', '.join(sources)}")
        return value

    return check


Affinity = Annotated[
    dict[str, Any],
    AfterValidator(kube_keys("Affinity", ["nodeAffinity", "podAffinity", "podAntiAffinity"])),
]
LabelSelector = Annotated[
    dict[str, Any],
    AfterValidator(kube_keys("LabelSelector", ["matchLabels", "matchExpressions"])),
]
PodSecurityContext = Annotated[
    dict[str, Any],
    AfterValidator(
        kube_keys(
            "PodSecurityContext",
            [
                "appArmorProfile",
                "fsGroup",
                "fsGroupChangePolicy",
                "runAsGroup",
                "runAsNonRoot",
                "runAsUser",
                "seLinuxChangePolicy",
                "seLinuxOptions",
                "seccompProfile",
                "supplementalGroups",
                "supplementalGroupsPolicy",
                "sysctls",
                "windowsOptions",
            ],
        )
    ),
]
ContainerSecurityContext = Annotated[
    dict[str, Any],
    AfterValidator(
        kube_keys(
            "SecurityContext",
            [
                "allowPrivilegeEscalation",
                "appArmorProfile",
                "capabilities",
                "privileged",
                "procMount",
                "readOnlyRootFilesystem",
                "runAsGroup",
                "runAsNonRoot",
                "runAsUser",
                "seLinuxOptions",
                "seccompProfile",
                "windowsOptions",
            ],
        )
    ),
]
Probe = Annotated[
    dict[str, Any],
    AfterValidator(
        kube_keys(
            "Probe",
            [
                "failureThreshold",
                "initialDelaySeconds",
                "periodSeconds",
                "successThreshold",
                "terminationGracePeriodSeconds",
                "timeoutSeconds",
            ],
            one_of=["exec", "grpc", "httpGet", "tcpSocket"],
        )
    ),
]
Volume = Annotated[
    dict[str, Any],
    AfterValidator(
        kube_keys(
            "Volume",
            [],
            required=["name"],
            one_of=[
                "awsElasticBlockStore",
                "azureDisk",
                "azureFile",
                "cephfs",
                "cinder",
                "configMap",
                "csi",
                "downwardAPI",
                "emptyDir",
                "ephemeral",
                "fc",
                "flexVolume",
                "flocker",
                "gcePersistentDisk",
                "gitRepo",
                "glusterfs",
                "hostPath",
                "image",
                "iscsi",
                "nfs",
                "persistentVolumeClaim",
                "photonPersistentDisk",
                "portworxVolume",
                "projected",
                "quobyte",
                "rbd",
                "scaleIO",
                "secret",
                "storageos",
                "vsphereVolume",
            ],
        )
    ),
]


class KeyRef(StrictModel):
    name: _Subdomain
    key: Annotated[str, StringConstraints(min_length=1)]
    optional: bool | None = None


class FieldRef(StrictModel):
    field_path: str
    api_version: str | None = None


class ResourceFieldRef(StrictModel):
    resource: str
    container_name: str | None = None
    divisor: str | None = None


class EnvSource(StrictModel):
    """Where a variable's value comes from (Kubernetes' ``valueFrom``): a key of a
    secret or config map, a field of the pod, or a container's resource."""

    secret_key_ref: KeyRef | None = None
    config_map_key_ref: KeyRef | None = None
    field_ref: FieldRef | None = None
    resource_field_ref: ResourceFieldRef | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvSource:
        if len(self.model_fields_set) != 1:
            raise ValueError(
                "give one of secretKeyRef, configMapKeyRef, fieldRef or resourceFieldRef"
            )
        return self


def _env_kind(value: Any) -> str:
    return "valueFrom" if isinstance(value, dict) else "value"


#: Environment variables by name: a value (``LOG_LEVEL: info``), or where it comes
#: from (``HF_TOKEN: {secretKeyRef: {name: hf, key: token}}``). The discriminator
#: tries only the form written, so a mistake is reported once, in that form's terms.
EnvValue = Annotated[
    Annotated[str, Tag("value")] | Annotated[EnvSource, Tag("valueFrom")],
    Discriminator(_env_kind),
]
Env = dict[Annotated[str, StringConstraints(min_length=1)], EnvValue]


class Toleration(StrictModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class TopologySpreadConstraint(StrictModel):
    max_skew: int = Field(ge=1)
    topology_key: str
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    label_selector: LabelSelector | None = None
    match_label_keys: list[str] | None = None
    min_domains: int | None = Field(default=None, ge=1)
    node_affinity_policy: Literal["Honor", "Ignore"] | None = None
    node_taints_policy: Literal["Honor", "Ignore"] | None = None


class VolumeMount(StrictModel):
    name: str
    mount_path: Annotated[str, StringConstraints(pattern=r"^/")]
    read_only: bool | None = None
    sub_path: str | None = None
    sub_path_expr: str | None = None
    mount_propagation: Literal["None", "HostToContainer", "Bidirectional"] | None = None
    recursive_read_only: Literal["Disabled", "IfPossible", "Enabled"] | None = None


class Port(StrictModel):
    container_port: int = Field(ge=1, le=65535)
    name: Annotated[str, StringConstraints(max_length=15)] | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None


class Container(StrictModel):
    """One container of a custom predictor, transformer or explainer."""

    name: _ContainerName = "kserve-container"
    image: str
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: Env = Field(default_factory=dict)
    ports: list[Port] = Field(default_factory=list)
    resources: Resources | None = None
    volume_mounts: list[VolumeMount] = Field(default_factory=list)
    working_dir: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    security_context: ContainerSecurityContext | None = None
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    startup_probe: Probe | None = None


class PodSettings(StrictModel):
    """Where and how a component's pods run; each field is the PodSpec field of the
    same name, and a field left out is left to Kubernetes and KServe."""

    service_account_name: _Subdomain | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    affinity: Affinity | None = None
    priority_class_name: _Subdomain | None = None
    runtime_class_name: _Subdomain | None = None
    image_pull_secrets: list[_Subdomain] = Field(
        default_factory=list, description="Secret names, rendered as [{name: ...}]"
    )
    volumes: list[Volume] = Field(default_factory=list)
    security_context: PodSecurityContext | None = None
    topology_spread_constraints: list[TopologySpreadConstraint] = Field(default_factory=list)
    pod_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels of the component's pods"
    )
    pod_annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations of the component's pods"
    )
