"""Load tests of a running Tripod service: Locust scenarios, the SLO checker, the ``make loadtest`` runner."""
