"""kernelStackTrace/userStackTrace: on Post of kprobe and syscall hooks
only (Tetragon's events carry stacks on process_kprobe alone), encoded as
the action's stack flags."""

import pytest

from tetrad.abi import generic as enc
from tetrad.policy.compile import KernelFacts, compile_policy
from tetrad.policy.errors import PolicyError
from tetrad.policy.schema import parse
from tests.unit.tables import hook_struct

HEAD = 'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "s"\nspec:\n'
SYSCALL = HEAD + """  kprobes:
  - call: sys_lseek
    syscall: true
    selectors:
    - matchActions:
      - action: {action}
{flags}"""


def test_post_with_both_stacks_sets_both_flags():
    [ch] = compile_policy(parse(SYSCALL.format(action="Post", flags="        kernelStackTrace: true\n"
                                                                   "        userStackTrace: true\n"),
                                "s.yaml"), KernelFacts())
    act = hook_struct(ch).sel[0].act[0]
    assert act.stack == enc.STACK_KERNEL | enc.STACK_USER
    [plain] = compile_policy(parse(SYSCALL.format(action="Post", flags=""), "s.yaml"), KernelFacts())
    assert hook_struct(plain).sel[0].act[0].stack == 0


@pytest.mark.parametrize("text, expected", [
    (SYSCALL.format(action="Sigkill", flags="        kernelStackTrace: true\n"),
     "kernelStackTrace applies to Post only"),
    (HEAD + """  lsmhooks:
  - hook: file_open
    selectors:
    - matchActions:
      - action: Post
        userStackTrace: true
""", "userStackTrace applies to kprobes (and syscall hooks) only; this is a lsm"),
    (SYSCALL.format(action="Post", flags="        kernelStackTrace: 1\n"), "must be true or false"),
])
def test_stacks_where_tetragon_has_none_are_refused(text, expected):
    with pytest.raises(PolicyError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        parse(text, "s.yaml")
