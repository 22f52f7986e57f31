/* Exits with the status given as argv[1]; checks argc/argv/envp reached main. */
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv, char **envp) {
    if (argc < 2) return 100;
    if (!envp[0] || !strchr(envp[0], '=')) return 101;
    return atoi(argv[1]);
}
