"""kernelStackTrace/userStackTrace: on Post of kprobe and syscall hooks
only (Tetragon's events carry stacks on process_kprobe alone), encoded as
the action's stack flags."""

import pytest

from tetrad.abi import generic as enc
from tetrad.policy.compile import KernelFacts, compile_policy
from tetrad.policy.errors import PolicyError
from tetrad.policy.kernel import required_features
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


def test_a_kernel_stack_on_a_syscall_hook_needs_the_kernel_to_give_one_there():
    """Syscall hooks run at the entry tracepoint, where some kernels (6.1)
    refuse kernel stacks: such a policy is refused there, naming why."""
    [kernel] = compile_policy(parse(SYSCALL.format(action="Post", flags="        kernelStackTrace: true\n"),
                                    "s.yaml"), KernelFacts())
    assert dict(required_features(kernel))["syscall_kernel_stacks"].endswith("kernelStackTrace")
    [user] = compile_policy(parse(SYSCALL.format(action="Post", flags="        userStackTrace: true\n"),
                                  "s.yaml"), KernelFacts())
    assert "syscall_kernel_stacks" not in dict(required_features(user))
