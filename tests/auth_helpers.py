"""Log a bootstrap member in and select its OU, as a browser client would."""


def member_client(client, tenant) -> dict:
    r = client.post("/auth/login", json={"email": tenant.email, "password": tenant.password})
    assert r.status_code == 200, r.json
    headers = {"Authorization": f"Bearer {r.json['token']}"}
    assert client.post("/org-units/active", json={"ouId": tenant.unit_id}, headers=headers).status_code == 200
    return headers
