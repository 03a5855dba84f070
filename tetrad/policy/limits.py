"""Every size and count limit on a policy file, in one table.

`tetrad policy check` and the daemon read, load and validate a policy
through the same functions (source.py, document.py, schema.py), which take
their limits from here; the README's "Limits" table repeats this one.

  what                                   limit      where it is checked, why
  file size                              1 MiB      source.py, before parsing
  nesting (lists and mappings)           32         document.py, while composing:
                                                    Tetragon's deepest policy has 11
  YAML aliases (*name) per file          64         document.py
  values in the document, aliases        100,000    document.py: a billion-laughs
    expanded                                        file is refused, not expanded
  integer literal                        64 chars   document.py and schema.parse_int
  metadata.name                          253        a Kubernetes object name: a
                                                    lower-case RFC 1123 DNS subdomain
  hooks per policy                       32         each hook takes a place at its
                                                    attach point, and a kprobe, LSM or
                                                    tracepoint hook a verifier pass
  args per hook                          5          Tetragon's EventConfigMaxArgs
  selectors per hook                     5          Tetragon's MaxSelectors
  matchArgs per selector                 5          Tetragon
  integer values per operator            8          what a selector's kernel entry
                                                    holds (4 ranges); string, path,
                                                    binary and address values have
                                                    no per-operator limit, as in
                                                    Tetragon: they count per policy
  matchPIDs values                       4
  actions per selector                   3
  values kept in kernel maps, per        512        string, path, binary and address
    policy                                          values each take an entry in a trie
                                                    of 16,384 (bpf/generic_hook.c) that
                                                    other policies share
  tags per hook                          16         Tetragon's TpMaxTags
  tag length                             2..128     Tetragon's TpMinTagLen/TpMaxTagLen
  message                                256 chars  Tetragon truncates at 256; tetrad
                                                    refuses, as events repeat it
  label                                  128 chars
  kernel function, LSM hook, tracepoint  512 chars  the kernel's KSYM_NAME_LEN
    and uprobe symbol names
  uprobe binary path                     4095 bytes PATH_MAX less its NUL
  Prefix value                           248 bytes  an LPM trie key holds 256 (4 go to
                                                    the match id, 4 to its length)
  Postfix value                          128 bytes  Tetragon's StringPostfixMaxLength
  Equal value of a string argument       247 bytes  an LPM trie key holds 248 bytes of
                                                    string, and an Equal value is kept
                                                    with its NUL (an exact match)

Integer fields are checked against the width of the kernel field they fill
(tetrad/abi/generic.py) and against the declared argument type; those
ranges live with the rules in schema.py, as they depend on the field.
"""

FILE_BYTES = 1 << 20
DEPTH = 32
ALIASES = 64
NODES = 100_000
NUMBER_CHARS = 64

NAME = 253
HOOKS = 32
ARGS = 5
SELECTORS = 5
MATCH_ARGS = 5
VALUES = 8
PIDS = 4
ACTIONS = 3
MAP_VALUES = 512
KERNEL_MAP_ENTRIES = 16384      # bpf/generic_hook.c: str_fwd, str_rev, cidr (G_TRIE_ENTRIES)

TAGS = 16
TAG_MIN, TAG_MAX = 2, 128
MESSAGE = 256
LABEL = 128
SYMBOL = 512
PATH_BYTES = 4095

PREFIX_BYTES = 248
EQUAL_BYTES = PREFIX_BYTES - 1
POSTFIX_BYTES = 128
STRING_BYTES = 256              # a string argument as the kernel keeps it, NUL included
