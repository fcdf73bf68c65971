# The governance application image, used by every service of docker-compose.yml that runs our
# code (the command picks the role: migrate | serve | project | relay | consume <name>).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only what the package build needs, so edits to tests or scripts do not invalidate this layer.
COPY pyproject.toml README.md ./
COPY src/ src/
COPY projections/ projections/
COPY consumers/ consumers/
RUN pip install .

# Run as an unprivileged user; the app needs no write access to /app.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin governance
USER governance

EXPOSE 8000
ENTRYPOINT ["governance"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
