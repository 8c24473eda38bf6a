chmod 750 certs && chmod 640 certs/server.pem certs/server.key
chmod 644 certs/ca.pem certs/client.pem certs/client.key
echo DTS_BROKER_TLS_DIR=certs >> .env
