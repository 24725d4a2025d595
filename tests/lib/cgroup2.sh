# Sourced by the test and demo scripts. cgroup2_mount prints where the
# cgroup v2 hierarchy is mounted, by the rule sluice-agent uses
# (daemon/src/cgroup.cpp): the last cgroup2 line of /proc/self/mountinfo
# whose mount point no later mount covers (/sys/fs/cgroup/unified on these
# hybrid hosts, /sys/fs/cgroup on most). Never hard-coded.
cgroup2_mount() {
  awk '{ mp[NR] = $5; fs[NR] = ""
         for (i = 7; i <= NF; i++) if ($i == "-") { fs[NR] = $(i + 1); break } }
       END {
         for (i = NR; i >= 1; i--) {
           if (fs[i] != "cgroup2") continue
           covered = 0
           for (j = i + 1; j <= NR; j++)
             if (mp[j] == mp[i] || mp[j] == "/" || index(mp[i], mp[j] "/") == 1) { covered = 1; break }
           if (!covered) { print mp[i]; exit }
         }
       }' /proc/self/mountinfo
}
