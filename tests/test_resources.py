import resource
import subprocess
import sys


def test_open_file_limit_is_raised_to_the_hard_limit():
    # In a child process with a low soft limit, so this test process is left alone.
    code = ("import resource; from lab.resources import raise_open_file_limit; "
            "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE); "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)); "
            "print(raise_open_file_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)")
    new_limit, soft_now, hard = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                               text=True, check=True).stdout.split()
    expected = hard if int(hard) != resource.RLIM_INFINITY else "256"
    assert new_limit == soft_now == expected
