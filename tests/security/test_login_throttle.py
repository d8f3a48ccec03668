"""Password guessing is throttled: after POOL_LOGIN_FAILURE_LIMIT (5) failures, a user
name is locked from every address and an address is locked for every user name, for
POOL_LOGIN_COOLOFF_MINUTES; attempts are audited in the admin, where an admin unlocks.
"""

from __future__ import annotations

from datetime import timedelta

from axes.models import AccessAttempt, AccessLog
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, TestCase, override_settings

PASSWORD = "correct horse battery staple"
HOME = "10.0.0.1"
ELSEWHERE = "10.0.0.2"


# A fast hasher: these tests sign in dozens of times.
@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
class LoginThrottleTestCase(TestCase):
    def setUp(self) -> None:
        self.alice = User.objects.create_user("alice", password=PASSWORD)
        self.bob = User.objects.create_user("bob", password=PASSWORD)
        self.root = User.objects.create_superuser("root", "root@example.org", PASSWORD)

    def sign_in(self, username: str, password: str, address: str = HOME) -> int:
        client = Client(REMOTE_ADDR=address)
        response = client.post("/accounts/login/", {"username": username,
                                                     "password": password})
        if response.status_code == 302:
            assert client.session.get("_auth_user_id"), "redirected but not signed in"
        return int(response.status_code)

    def guess_five_times(self, username: str = "alice") -> None:
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            assert self.sign_in(username, "wrong") == 200  # the form, with its error
        assert self.sign_in(username, "wrong") == 429  # the fifth locks out

    def test_the_settings_come_from_the_environment_defaults(self) -> None:
        assert settings.AXES_FAILURE_LIMIT == 5
        cooloff: timedelta = settings.AXES_COOLOFF_TIME
        assert cooloff == timedelta(minutes=15)

    def test_five_wrong_passwords_then_the_right_one_is_refused(self) -> None:
        self.guess_five_times()
        assert self.sign_in("alice", PASSWORD) == 429
        # The user name is locked from another address too.
        assert self.sign_in("alice", PASSWORD, address=ELSEWHERE) == 429

    def test_the_address_is_locked_for_every_user_name(self) -> None:
        self.guess_five_times()
        assert self.sign_in("bob", PASSWORD) == 429
        assert self.sign_in("bob", PASSWORD, address=ELSEWHERE) == 302  # bob elsewhere: fine

    def test_guessing_other_names_from_one_address_is_counted_too(self) -> None:
        for name in ("a1", "a2", "a3", "a4", "a5"):
            self.sign_in(name, "wrong")
        assert self.sign_in("alice", PASSWORD) == 429

    def test_the_attempts_are_audited_and_an_admin_unlocks(self) -> None:
        self.guess_five_times()
        assert AccessAttempt.objects.filter(username="alice", ip_address=HOME).exists()
        admin = Client(REMOTE_ADDR="10.0.0.9")
        admin.force_login(self.root)
        page = admin.get("/admin/axes/accessattempt/")
        assert page.status_code == 200 and b"alice" in page.content
        attempt = AccessAttempt.objects.get(username="alice")
        # The admin's unlock: delete the attempt (the Axes admin's delete action).
        response = admin.post("/admin/axes/accessattempt/", {
            "action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"})
        assert response.status_code == 302
        assert not AccessAttempt.objects.exists()
        assert self.sign_in("alice", PASSWORD) == 302
        assert AccessLog.objects.filter(username="alice").exists()  # the success, logged

    def test_after_the_cool_off_it_works_again(self) -> None:
        self.guess_five_times()
        assert self.sign_in("alice", PASSWORD) == 429
        AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time
                                     - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
        assert self.sign_in("alice", PASSWORD) == 302

    @override_settings(AXES_FAILURE_LIMIT=5)
    def test_the_admin_sign_in_is_throttled_too(self) -> None:
        for _ in range(5):
            Client(REMOTE_ADDR=HOME).post("/admin/login/", {"username": "root",
                                                            "password": "wrong"})
        response = Client(REMOTE_ADDR=HOME).post("/admin/login/", {
            "username": "root", "password": PASSWORD})
        assert response.status_code == 429
