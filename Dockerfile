# The pd-relay image: one image for ingress, worker and simulator (the command picks).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY relay ./relay
COPY worker ./worker
COPY simulator ./simulator
RUN pip install --no-cache-dir . \
 && groupadd --system --gid 10001 relay \
 && useradd --system --uid 10001 --gid 10001 --no-create-home relay
USER relay
ENV PYTHONUNBUFFERED=1
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["pd-relay"]
CMD ["ingress", "--host", "0.0.0.0", "--port", "8080"]
