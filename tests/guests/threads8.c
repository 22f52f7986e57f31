/* 8 pthreads: a mutex-protected counter, and a bounded queue with two
 * condition variables (4 producers, 4 consumers). Asserts the totals. */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>

#define N 8
#define ITEMS 2000
#define CAP 16

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER, not_empty = PTHREAD_COND_INITIALIZER;
static long counter, queue[CAP], consumed_sum;
static int head, count, produced, consumed;

static void *bump(void *arg) {
    for (int i = 0; i < 5000; i++) {
        pthread_mutex_lock(&lock);
        counter++;
        pthread_mutex_unlock(&lock);
    }
    return arg;
}

static void *producer(void *arg) {
    long id = (long)arg;
    for (int i = 0; i < ITEMS; i++) {
        pthread_mutex_lock(&lock);
        while (count == CAP) pthread_cond_wait(&not_full, &lock);
        queue[(head + count++) % CAP] = id * ITEMS + i;
        produced++;
        pthread_cond_signal(&not_empty);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static void *consumer(void *arg) {
    for (int i = 0; i < ITEMS; i++) {
        pthread_mutex_lock(&lock);
        while (count == 0) pthread_cond_wait(&not_empty, &lock);
        consumed_sum += queue[head];
        head = (head + 1) % CAP;
        count--;
        consumed++;
        pthread_cond_signal(&not_full);
        pthread_mutex_unlock(&lock);
    }
    return arg;
}

int main(void) {
    pthread_t t[N];
    for (long i = 0; i < N; i++) assert(pthread_create(&t[i], NULL, bump, (void *)i) == 0);
    for (long i = 0; i < N; i++) {
        void *ret;
        assert(pthread_join(t[i], &ret) == 0 && ret == (void *)i);
    }
    assert(counter == N * 5000);
    for (long i = 0; i < N / 2; i++) {
        assert(pthread_create(&t[i], NULL, producer, (void *)i) == 0);
        assert(pthread_create(&t[N / 2 + i], NULL, consumer, NULL) == 0);
    }
    for (int i = 0; i < N; i++) assert(pthread_join(t[i], NULL) == 0);
    long want = 0;
    for (long id = 0; id < N / 2; id++)
        for (int i = 0; i < ITEMS; i++) want += id * ITEMS + i;
    assert(produced == N / 2 * ITEMS && consumed == produced && consumed_sum == want);
    printf("ok %ld %ld\n", counter, consumed_sum);
    return 0;
}
