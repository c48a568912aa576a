def test_health_is_public(client):
    assert client.get("/healthz").json == {"status": "ok"}


def test_admin_creates_town_and_reads_it_back(client, make):
    h = make.auth(make.token("admin"))
    r = client.post("/api/v1/registry/towns", json={"name": "会城街道", "code": "440705001"}, headers=h)
    assert r.status_code == 201, r.json
    assert client.get(f"/api/v1/registry/towns/{r.json['id']}", headers=h).json["name"] == "会城街道"
