# The demo stack's Airflow image: the official Airflow 3.3 image plus this provider, installed from
# the checkout (docker compose build), with the Celery provider its workers run (the `celery` extra).
# The Airflow version is pinned so pip cannot move it.
ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}
ARG AIRFLOW_VERSION
COPY --chown=airflow:0 pyproject.toml README.md /opt/dbstream/
COPY --chown=airflow:0 airflow_dbstream /opt/dbstream/airflow_dbstream
COPY --chown=airflow:0 lua /opt/dbstream/lua
COPY --chown=airflow:0 scripts/demo_writer.py /opt/dbstream/scripts/demo_writer.py
COPY --chown=airflow:0 dags/sql /opt/dbstream/dags/sql
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/dbstream[postgres,fast,celery]"
