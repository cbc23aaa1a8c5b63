"""xaibench: a plugin-based benchmark of saliency explanations."""
from .hookspecs import (  # noqa: F401
    AttackRecord,
    BackboneRecord,
    DatasetRecord,
    ExecutorRecord,
    ExplainerRecord,
    MetricRecord,
    SuiteRecord,
    hookimpl,
)

__version__ = "0.1.0"
