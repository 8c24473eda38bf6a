mkdir -p certs && cd certs
openssl req -x509 -newkey rsa:2048 -nodes -days 365 \
    -keyout ca.key -out ca.pem -subj /CN=dts-ca
printf 'subjectAltName = %s\nextendedKeyUsage = serverAuth\n' \
    "DNS:rabbit.example.org, DNS:broker, DNS:localhost, IP:127.0.0.1" > server.ext
printf 'extendedKeyUsage = clientAuth\n' > client.ext
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
    -subj /CN=dts-server
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -days 365 -extfile server.ext -out server.pem
openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr \
    -subj /CN=dts-client
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -days 365 -extfile client.ext -out client.pem
cd ..
