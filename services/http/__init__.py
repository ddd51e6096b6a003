"""The BentoML services and the HTTP protocols they speak, one module per protocol.

- ``service``: the ``tripod`` entry service — builds the pipeline once per worker, serves ``/predict``, and
  mounts the protocol routers; ``stages``: the three stage services for ``TRIPOD_STAGES=services``;
- ``predict``, ``sagemaker``, ``oip``: the protocols (Tripod's JSON, the SageMaker container contract, the
  Open Inference Protocol);
- ``config``: the settings, read once when a worker imports the service; ``state``: what routes reach;
- ``errors``, ``limits``, ``protocol``: one JSON error shape, bounded request bodies, bounded header reads;
- ``worker``: start-up tuning of a serving process; ``entrypoint``: the container's ``serve`` command.
"""
