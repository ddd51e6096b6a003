"""The serving settings of this process, read once, when BentoML imports the services to start a worker.

BentoML fixes batching, worker counts and dependencies when the service classes are declared, so the
settings must exist at import; this module is the one place they are read.  Nothing else in ``services/``
reads the environment.
"""

from __future__ import annotations

from services.monitoring.variants import VariantSpec, served_variants
from services.settings import ServingSettings

SETTINGS = ServingSettings.from_env()
STAGE_SERVICES = SETTINGS.stages == "services"
VARIANTS: list[VariantSpec] = served_variants(SETTINGS.variants, SETTINGS.model_dir)
"""The variants served (one, ``AllTraffic``, without a variants file): with stage services, each gets its own
three stage services, declared at import."""
