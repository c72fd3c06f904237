def test_staff_sign_in_shows_dashboard(staff_client):
    response = staff_client.get("/staff/")
    assert response.status_code == 200
    assert "Dashboard" in response.get_data(as_text=True)


def test_password_reset_email_arrives_over_smtp(make, client, run_worker, smtp_server):
    from tests.support.web import email_text, post_form

    make.staff()
    response = post_form(client, "/staff/password/forgot", {"email": "staff@portal.example"})
    assert response.status_code == 200
    assert run_worker() == 1
    [message] = smtp_server.to("staff@portal.example")
    assert "/staff/password/reset/" in email_text(message)
