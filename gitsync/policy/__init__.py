"""Policies as code: CEL rules over specs, checked when they load, evaluated fast.

A policy reads like a Kubernetes ValidatingAdmissionPolicy::

    apiVersion: gitsync.io/v1alpha1
    kind: Policy
    metadata: {name: require-team-label}
    spec:
      severity: deny                 # deny | warn
      match:
        kinds: [ModelDeployment, TrainingRun]
        namespaces: [ml-serving]     # optional
        labelSelector: {matchLabels: {...}, matchExpressions: [...]}  # optional
      matchConditions:               # optional CEL preconditions, all must hold
        - {name: canary, expression: "object.spec.rollout.strategy == 'canary'"}
      variables:
        - {name: team, expression: "object.metadata.labels['team']"}
      validations:
        - expression: "variables.team != ''"
          message: "a team label is required"      # or messageExpression
          reason: Forbidden                         # optional
      params: {...}                  # optional static data, ``params`` in CEL

``kinds`` selects by the object's own kind or by the kind it renders to: a policy
for ``InferenceService`` judges plain InferenceServices and ModelDeployments alike
(read ``rendered`` for what they have in common).

Expressions see ``object`` (the spec as the user wrote it, a plain dict),
``rendered`` (the Kubernetes object it renders to), ``oldObject`` (the object at
the base revision, or null), ``request`` (``kind``, ``namespace``, ``operation``:
CREATE or UPDATE), ``params`` and ``variables``.

Every expression is parsed and type-checked when the policy loads; a broken
policy is a :class:`~gitsync.loading.Diagnostic` naming the file, line, field and
policy. At evaluation an expression that errors (a missing key, a division by
zero, a non-bool result) is a failed validation whose message says why, never a
pass.

The package, one responsibility per module:

- :mod:`~gitsync.policy.models`: the document models and the result types;
- :mod:`~gitsync.policy.cel`: the CEL engine (the only module that knows it);
- :mod:`~gitsync.policy.compile`: a document into a runnable :class:`Policy`;
- :mod:`~gitsync.policy.enforce`: policy sets over entries, :class:`Verdicts`;
- :mod:`~gitsync.policy.library`: files, sources and the shipped library;
- :mod:`~gitsync.policy.locate`: positions in YAML for diagnostics;
- :mod:`~gitsync.policy.report`: verdicts as Markdown for plan.

Quantities are :mod:`gitsync.quantity`, shared with specs and plan; they are
re-exported here because policies were their first user.
"""

from gitsync.policy.compile import Policy, ProgramStore
from gitsync.policy.enforce import (
    PolicySet,
    VerdictMemo,
    Verdicts,
    VerdictStore,
    enforce,
    entry_object,
)
from gitsync.policy.library import LIBRARY_DIR, load_library, load_policies, load_policy_dirs
from gitsync.policy.models import (
    LabelSelector,
    LabelSelectorRequirement,
    MatchCondition,
    PolicyDocument,
    PolicyMatch,
    PolicyResult,
    PolicySeverity,
    Validation,
    Variable,
    Violation,
)
from gitsync.policy.report import verdict_lines
from gitsync.quantity import Quantity, QuantityError

__all__ = [
    "LIBRARY_DIR",
    "LabelSelector",
    "LabelSelectorRequirement",
    "MatchCondition",
    "Policy",
    "PolicyDocument",
    "PolicyMatch",
    "PolicyResult",
    "PolicySet",
    "PolicySeverity",
    "ProgramStore",
    "Quantity",
    "QuantityError",
    "Validation",
    "Variable",
    "VerdictMemo",
    "VerdictStore",
    "Verdicts",
    "Violation",
    "enforce",
    "entry_object",
    "load_library",
    "load_policies",
    "load_policy_dirs",
    "verdict_lines",
]
